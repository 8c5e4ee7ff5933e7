"""Code the tests (and benches) use that the product does not: clients, readers, builders."""
