//! CA, enrollment and prefix allocation for hometun.
