"""TrustLLM fairness tasks: one module per dataset file."""
