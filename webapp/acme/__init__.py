"""The ACME layer over certbot's `acme`: the client (client.py, one RFC 8555 step a method), its
transport (retries, error translation), and account keys. No Flask here."""
