"""Paper-1 demos: sinusoidal positional encoding (Section 3.5) and why 1/sqrt(d_k) (Section 3.2.1)."""
