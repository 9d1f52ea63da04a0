"""Product category from the listing title: a fine-tuned MiniLM teacher, a hashed n-gram student."""
from ..config import UseCase

USE_CASE = UseCase(
    name="product_category",
    extract_sql="product_category/extract_products.sql",
    extract_task_id="extract_products",
    id_column="product_id",
    input_columns=("title",),
    label_column="category",
    teacher_sql="product_category/gold_products.sql",
)
