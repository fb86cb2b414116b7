"""Yahoo Finance through yfinance: `quote` (the production source, yfinance's quote scraper),
`chart` (the fallback, the chart API), `batch` (what both share)."""
