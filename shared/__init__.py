"""d06 common package: settings, schema, catalogue, hierarchy, semantics, plumbing shared by the services."""
