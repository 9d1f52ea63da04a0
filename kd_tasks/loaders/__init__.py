"""Loaders: a source's rows into the warehouse tables the use cases' SQL reads.

``catalogue`` (products: a user's file, the fashion catalogue), ``events`` (behaviour logs: Taobao,
Online Retail) and ``synthetic`` (a generated catalogue for the demo). A loader validates every row
and refuses a file with the rows it could not load named; it never drops rows silently.
"""
