"""Vision Transformers: attention capture, rollout, attention distance, embeddings, the model registry."""
