"""Search relevance: rank a query's candidate products. A MiniLM cross-encoder (query and title read
together, one pass per pair) scores every pair; a two-tower student (product vectors computed
offline: a query costs one small encoder pass and dot products) is distilled from its scores with
pointwise, listwise and contrastive (InfoNCE over the batch's products) terms plus the human grade
where a pair was judged. Queries are the unit of everything: the held-out split, the batches, the
metrics (NDCG@10 with graded gains) and the bootstrap resamples."""
from ..config import DistillConfig, GateConfig, TeacherTrainConfig, UseCase

USE_CASE = UseCase(
    name="search_relevance",
    task="ranking",
    extract_sql="search_relevance/extract_pairs.sql",
    extract_task_id="extract_pairs",
    teacher_sql="search_relevance/gold_pairs.sql",
    id_column="pair_id",
    input_columns=("query", "title"),
    label_column="grade",
    group_column="query",
    item_id_column="product_id",
    student_family="two_tower",
    teacher_family="hf_cross_encoder",
    # sampled_candidates: catalogue products added to each query as unjudged candidates
    extract_params={"sampled_candidates": 4},
    # T = 0.25: the two-tower student's best validation NDCG@10 over both regimes of bench-search (T in 0.1-1)
    distill=DistillConfig(temperature=0.25, alpha=0.5, epochs=8, learning_rate=3e-3, batch_size=256,
                          student_size="base", lookback_days=7,
                          loss_terms={"pointwise_kd": 1.0, "listwise_kd": 1.0, "infonce_kd": 1.0, "graded_gold": 1.0}),
    gate=GateConfig(metric="ndcg_at_10", min_teacher_retention=0.9, max_champion_regression=0.01),
    # graded regression on the mean rating; query + title in 48 tokens (Home Depot titles average 12 words)
    teacher_train=TeacherTrainConfig(epochs=3, learning_rate=5e-5, head_learning_rate=1e-3, batch_size=32,
                                     max_length=48, balanced_classes=False),
)
