"""Testing: collection sites, labs, tubes and pools, results, capacity matching."""
