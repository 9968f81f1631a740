"""Sans-I/O XML stream protocol: parsing, negotiation pieces, SASL. Imports no trio."""
