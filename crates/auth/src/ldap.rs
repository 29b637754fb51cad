//! LDAP and Active Directory: bind authentication, user search, group
//! membership for team sync. (Being written.)
