"""Merchant webhooks: Standard Webhooks signing, merchants and their secrets, delivery."""
