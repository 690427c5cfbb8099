// @generated automatically by Diesel CLI.

diesel::table! {
    cache_write_log (id) {
        id -> Integer,
        at_ms -> BigInt,
        who -> Text,
        what -> Text,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Integer,
        username -> Text,
        client_addr -> Text,
        failed_at -> BigInt,
    }
}

diesel::table! {
    staff_sessions (session_key) {
        session_key -> Text,
        staff_id -> Nullable<Integer>,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    staff_users (id) {
        id -> Integer,
        username -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        is_active -> Bool,
        is_superuser -> Bool,
    }
}

diesel::table! {
    student_age_counts (age) {
        age -> Integer,
        students -> BigInt,
    }
}

diesel::table! {
    student_history (id) {
        id -> Integer,
        student_id -> Integer,
        at_ms -> BigInt,
        who -> Text,
        action -> Text,
        name_before -> Nullable<Text>,
        name_after -> Nullable<Text>,
        age_before -> Nullable<Integer>,
        age_after -> Nullable<Integer>,
    }
}

diesel::table! {
    student_id_blocks (block) {
        block -> Integer,
        students -> BigInt,
    }
}

diesel::table! {
    student_stats (id) {
        id -> Integer,
        student_count -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    students (id) {
        id -> Integer,
        name -> Text,
        age -> Integer,
        created_at -> Timestamp,
    }
}

diesel::joinable!(staff_sessions -> staff_users (staff_id));

diesel::allow_tables_to_appear_in_same_query!(
    cache_write_log,
    login_failures,
    staff_sessions,
    staff_users,
    student_age_counts,
    student_history,
    student_id_blocks,
    student_stats,
    students,
);
