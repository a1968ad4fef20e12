"""products feature: types, queries, mutations, loaders."""
