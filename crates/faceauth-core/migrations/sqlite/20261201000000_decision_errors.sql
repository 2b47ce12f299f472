-- A failure that replaced a policy decision keeps its code in `reason` and its
-- message here (it was written into `reason` as "POLICY_ERROR: <message>").
ALTER TABLE decisions ADD COLUMN error TEXT;
UPDATE decisions SET error = substr(reason, 15), reason = 'POLICY_ERROR' WHERE reason LIKE 'POLICY_ERROR: %';
