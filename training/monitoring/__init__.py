"""Production watch: drift against the training reference, and champion/challenger promotion."""
