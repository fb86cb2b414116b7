"""E-mail: `message` builds the alert e-mail (and its Message-ID, from the notification id),
`smtp` sends it over one kept SMTP connection, `eml_files` writes it as an `.eml` file."""

# The one default sender (STOCKALERT_SMTP_FROM overrides it); here so that reading the
# configuration does not load the e-mail modules.
DEFAULT_SENDER = "stockalert <alerts@stockalert.invalid>"
