"""soul.bench"""
