"""soul.training"""
