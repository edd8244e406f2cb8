-- Console roles (issue 17, CONTRACT 1.2 §8): every action taken through the console is
-- recorded with the role of the user who took it. Actions recorded before roles existed
-- keep NULL: their users had every power.

ALTER TABLE console_actions
    ADD COLUMN role TEXT CHECK (role IN ('viewer', 'operator', 'privacy'));
