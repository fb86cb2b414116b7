"""stockalert: e-mail users once per stock-price threshold crossing."""

__version__ = "0.1.0"
