"""The learned routing strategy: graded prompts, the model that predicts the strong tier's need, its evaluation.

Django-free, so that bench/routing_eval.py and the web process's strategy share it.
"""
