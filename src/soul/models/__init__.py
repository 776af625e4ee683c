"""soul.models"""
