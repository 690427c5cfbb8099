// @generated automatically by Diesel CLI.

diesel::table! {
    cache_database (id) {
        id -> Integer,
        identity -> Text,
    }
}

diesel::table! {
    cache_generation (id) {
        id -> Integer,
        generation -> BigInt,
    }
}

diesel::table! {
    cache_invalidations (id) {
        id -> Integer,
        cache_key -> Text,
        created_at_ms -> BigInt,
        handed_over -> Bool,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    cache_database,
    cache_generation,
    cache_invalidations,
);
