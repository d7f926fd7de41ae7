"""The view tables in SQL: their schema (shared), the batch writes with
compare-and-set positions (shared), and one store per database."""
