-- Failed authentications per username are counted from the audit log (attempt limit).
CREATE INDEX decisions_username_at ON decisions (username, at);
