-- The default rule pack. Risk officers change these through the API like any other rule
-- (every change is a new version); velocity and distance rules start in shadow so their hit
-- rates can be watched before they decide anything.

INSERT INTO rules (name) VALUES
    ('large_foreign_amount'), ('high_risk_merchant'), ('card_velocity_burst'),
    ('far_from_home_large'), ('many_countries_per_card');

INSERT INTO rule_versions (rule_id, version, description, expression, action, priority,
                           status, author)
SELECT r.rule_id, 1, d.description, d.expression, d.action, d.priority, d.status, 'system'
  FROM (VALUES
    ('large_foreign_amount', 'A large payment outside the cardholder''s home country.',
     'amount > 5000 and country != account.home_country', 'flag', 100, 'active'),
    ('high_risk_merchant', 'The merchant is on the high-risk merchants list.',
     'merchant_id in list(''high_risk_merchants'')', 'decline', 10, 'active'),
    ('card_velocity_burst', 'Six or more payments on one card within ten minutes.',
     'count(card, 10m) >= 5', 'flag', 200, 'shadow'),
    ('far_from_home_large', 'A sizeable payment more than 1,000 km from home.',
     'distance_km_from_home > 1000 and amount > 500', 'flag', 300, 'shadow'),
    ('many_countries_per_card', 'One card used in three or more countries within a day.',
     'distinct_countries(card, 24h) >= 3', 'flag', 300, 'shadow')
  ) AS d(name, description, expression, action, priority, status)
  JOIN rules r USING (name);
