"""The ways in: the logging handler, the OTel exporters, context, @track and configure()."""
