"""orders feature: types, queries, mutations, loaders."""
