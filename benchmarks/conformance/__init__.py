"""`make conformance-report`: the conformance suite against nginx and Node, as a report."""
