//! HDBSCAN density clustering.
