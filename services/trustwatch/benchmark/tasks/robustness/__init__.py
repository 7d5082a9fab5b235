"""TrustLLM robustness tasks: one module per dataset file."""
