"""Feed ingestion, independent of XMPP: fetch → parse → normalize → dedupe → publish.

The poller (:mod:`feeds.poller`) drives the pipeline and hands normalized entries to a
``Publisher`` supplied by the application; nothing here knows about pubsub nodes or stanzas.
"""
