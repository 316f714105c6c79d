"""Evaluation: question framing, scorers (option likelihood, chain of thought, free-form with a judge), bootstrap
intervals, the scaling fit and the results report."""
