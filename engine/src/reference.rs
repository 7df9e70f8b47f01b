//! CPU reference executor (in progress).
