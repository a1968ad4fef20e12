"""tickets feature: types, queries, mutations, loaders."""
