"""customers feature: types, queries, mutations, loaders."""
