"""Ray actors of the batch job: CPU preprocessing and model inference."""
