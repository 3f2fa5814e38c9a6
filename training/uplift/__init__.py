"""Treatment-effect (uplift) learners, their evaluation and off-policy estimates."""
