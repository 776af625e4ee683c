"""soul.serve"""
