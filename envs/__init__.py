"""Built-in environments, one file each. Build them with `superlearner.make(env_id)`."""
