"""Racing candidate guides for a base: pick the best pair with the fewest samples."""
