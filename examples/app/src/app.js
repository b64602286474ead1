console.log("hello from strata");
