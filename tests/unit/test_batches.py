"""Training batches grouped by length: every row once per epoch, far less padding, still shuffled."""
import torch

from kd_tasks.models.training import batches


def _padded(bs, lengths):
    return sum(int(lengths[b].max()) * len(b) for b in bs)


def test_length_grouping_draws_every_row_once_with_little_padding():
    g = torch.Generator().manual_seed(0)
    rows = torch.arange(5000)
    lengths = torch.randint(8, 129, (5000,), generator=g)  # reviews: 8..128 tokens
    grouped = batches(rows, 32, torch.Generator().manual_seed(1), lengths)
    plain = batches(rows, 32, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(grouped).tolist()) == list(range(5000))
    assert all(len(b) <= 32 for b in grouped)
    # random batches pad almost every row to ~128 tokens; grouped ones to their own length
    assert _padded(grouped, lengths) < 0.75 * _padded(plain, lengths)
    assert _padded(grouped, lengths) < 1.1 * int(lengths.sum())
    # the batches are not in length order, and another seed gives other batches
    first = [int(lengths[b].max()) for b in grouped[:20]]
    assert first != sorted(first, reverse=True)
    other = batches(rows, 32, torch.Generator().manual_seed(2), lengths)
    assert [b.tolist() for b in other] != [b.tolist() for b in grouped]


def test_rows_are_indices_not_positions():
    rows = torch.tensor([10, 11, 12, 13, 14, 15])
    lengths = torch.tensor([1, 9, 2, 8, 3, 7])  # lengths[i] is the length of rows[i]
    out = batches(rows, 2, torch.Generator().manual_seed(0), lengths)
    pairs = sorted(tuple(sorted(b.tolist())) for b in out)
    # the window holds every row here: the batches are the rows by length, cut in twos
    assert pairs == [(10, 12), (11, 13), (14, 15)]
