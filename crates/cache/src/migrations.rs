//! The cache's tables (the outbox, the generation's mark, the database's identity), as
//! migrations for each backend, for the application to run with its own.
//!
//! Their versions are dated like the application's, and Diesel applies pending migrations in
//! version order, so [`with_application`] interleaves the two sets exactly as they were
//! written: a migration of the application that refers to a cache table (a trigger that raises
//! the mark) runs after the migration that created it.

use diesel::backend::Backend;
use diesel::migration::{Migration, MigrationSource};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The cache's migrations and the application's, as one source.
pub struct WithApplication {
    cache: EmbeddedMigrations,
    application: EmbeddedMigrations,
}

pub fn with_application(
    cache: EmbeddedMigrations,
    application: EmbeddedMigrations,
) -> WithApplication {
    WithApplication { cache, application }
}

impl<DB: Backend> MigrationSource<DB> for WithApplication {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<DB>>>> {
        let mut all = MigrationSource::<DB>::migrations(&self.cache)?;
        all.extend(MigrationSource::<DB>::migrations(&self.application)?);
        Ok(all)
    }
}
