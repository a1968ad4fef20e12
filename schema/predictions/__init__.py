"""Predictions as GraphQL fields (issue 6): types, what-if inputs, batched loaders."""
