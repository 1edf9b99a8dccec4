"""Console scripts: argument parsing only; the work lives in the library."""
