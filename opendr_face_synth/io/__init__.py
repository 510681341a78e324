"""Files in and out: ``images`` (reading photos with clear errors), ``dataset`` (output layout, metadata.csv),
``contact_sheet`` (per-person previews). Import the sub-modules directly; this package imports nothing."""
