"""The admin dashboard: progress, workers, items, clusters, training and sites."""
