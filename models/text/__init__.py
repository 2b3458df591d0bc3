"""Text models: MiniLM and our paper Transformer on dates; capture, statistics, position analyses."""
