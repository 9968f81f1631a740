"""The trio shell: listeners, connections, TLS. Protocol decisions live in stream/ and core/."""
