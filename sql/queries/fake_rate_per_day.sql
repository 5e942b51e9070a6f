-- Share of judged videos called FAKE, per scoring day and model version. Only videos with a score
-- count (FAKE, REAL, UNCERTAIN); NO_FACE and ERROR are left out of the rate.
-- Parameters: none.
-- Columns: day, model_version, judged, fakes, uncertain, fake_rate (0..1; NULL when nothing was judged).
SELECT day,
       model_version,
       fakes + real + uncertain AS judged,
       fakes,
       uncertain,
       CASE WHEN fakes + real + uncertain > 0
            THEN CAST(fakes AS DOUBLE PRECISION) / (fakes + real + uncertain)
       END AS fake_rate
FROM daily_summary
ORDER BY day, model_version
