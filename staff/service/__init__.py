"""The checking service: students upload solution.py, a dispatcher grades it,
TAs see the gradebook."""
