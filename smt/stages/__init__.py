"""Stage implementations: each module exposes `run(ctx: StageContext)`."""
